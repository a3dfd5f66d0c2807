//! DIMSE command sets (group 0000, always implicit VR little endian): decoding requests and
//! encoding responses, with the command fields and statuses this SCP uses.

/// Command Field values (PS3.7 E.1).
pub(crate) mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Status values (PS3.4 annexes B, C and PS3.7 C).
pub(crate) mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const PENDING: u16 = 0xFF00;
    /// Refused: out of resources (the archive could not store or is unavailable).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class.
    pub const DATASET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Failure: duplicate SOP instance (the conflict policy refuses a second copy).
    pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
    /// Failure: unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// C-FIND failed: unable to process.
    pub const FIND_UNABLE_TO_PROCESS: u16 = 0xC001;
    /// C-FIND failed: identifier does not match SOP class.
    pub const FIND_IDENTIFIER_DOES_NOT_MATCH: u16 = 0xA900;
}

/// CommandDataSetType value meaning "no data set follows".
pub(crate) const NO_DATA_SET: u16 = 0x0101;

const AFFECTED_SOP_CLASS_UID: (u16, u16) = (0x0000, 0x0002);
const COMMAND_FIELD: (u16, u16) = (0x0000, 0x0100);
const MESSAGE_ID: (u16, u16) = (0x0000, 0x0110);
const MESSAGE_ID_BEING_RESPONDED_TO: (u16, u16) = (0x0000, 0x0120);
const PRIORITY: (u16, u16) = (0x0000, 0x0700);
const COMMAND_DATA_SET_TYPE: (u16, u16) = (0x0000, 0x0800);
const STATUS: (u16, u16) = (0x0000, 0x0900);
const ERROR_COMMENT: (u16, u16) = (0x0000, 0x0902);
const AFFECTED_SOP_INSTANCE_UID: (u16, u16) = (0x0000, 0x1000);

/// The fields of a request command this SCP reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: String,
    pub affected_sop_instance_uid: String,
    pub priority: u16,
    pub has_data_set: bool,
}

/// Why a command set could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed command set: {0}")]
pub(crate) struct MalformedCommand(pub String);

impl Request {
    /// Decodes an implicit VR little endian command set.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Request, MalformedCommand> {
        let mut request = Request { has_data_set: false, ..Request::default() };
        let mut seen_field = false;
        let mut seen_data_set_type = false;
        let mut rest = bytes;
        while !rest.is_empty() {
            if rest.len() < 8 {
                return Err(MalformedCommand(format!("{} trailing bytes", rest.len())));
            }
            let group = u16::from_le_bytes([rest[0], rest[1]]);
            let element = u16::from_le_bytes([rest[2], rest[3]]);
            let length = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let Some(value) = rest.get(8..8 + length) else {
                return Err(MalformedCommand(format!("element ({group:04X},{element:04X}) is longer than the command")));
            };
            rest = &rest[8 + length..];
            if group != 0x0000 {
                return Err(MalformedCommand(format!("element ({group:04X},{element:04X}) is not in group 0000")));
            }
            let us = || -> Result<u16, MalformedCommand> {
                match value {
                    [a, b] => Ok(u16::from_le_bytes([*a, *b])),
                    _ => Err(MalformedCommand(format!("({group:04X},{element:04X}) is not a US value"))),
                }
            };
            match (group, element) {
                COMMAND_FIELD => {
                    request.command_field = us()?;
                    seen_field = true;
                }
                MESSAGE_ID => request.message_id = us()?,
                PRIORITY => request.priority = us()?,
                COMMAND_DATA_SET_TYPE => {
                    request.has_data_set = us()? != NO_DATA_SET;
                    seen_data_set_type = true;
                }
                AFFECTED_SOP_CLASS_UID => request.affected_sop_class_uid = text(value),
                AFFECTED_SOP_INSTANCE_UID => request.affected_sop_instance_uid = text(value),
                _ => {}
            }
        }
        if !seen_field || !seen_data_set_type {
            return Err(MalformedCommand("CommandField or CommandDataSetType missing".into()));
        }
        Ok(request)
    }
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).to_string()
}

/// A response command set under construction.
pub(crate) struct Response {
    elements: Vec<((u16, u16), Vec<u8>)>,
}

impl Response {
    /// The response to `request` with `command_field`, `status`, and whether a data set
    /// follows. Echoes the request's MessageID and affected SOP class/instance.
    pub(crate) fn to(request: &Request, command_field: u16, status: u16, has_data_set: bool) -> Response {
        let mut response = Response { elements: Vec::new() };
        if !request.affected_sop_class_uid.is_empty() {
            response.put(AFFECTED_SOP_CLASS_UID, uid(&request.affected_sop_class_uid));
        }
        response.put(COMMAND_FIELD, command_field.to_le_bytes().to_vec());
        response.put(MESSAGE_ID_BEING_RESPONDED_TO, request.message_id.to_le_bytes().to_vec());
        let data_set_type = if has_data_set { 0x0000u16 } else { NO_DATA_SET };
        response.put(COMMAND_DATA_SET_TYPE, data_set_type.to_le_bytes().to_vec());
        response.put(STATUS, status.to_le_bytes().to_vec());
        if !request.affected_sop_instance_uid.is_empty() {
            response.put(AFFECTED_SOP_INSTANCE_UID, uid(&request.affected_sop_instance_uid));
        }
        response
    }

    /// Adds an Error Comment (LO: at most 64 characters, no backslash).
    pub(crate) fn error_comment(mut self, comment: &str) -> Response {
        let mut value: String = comment.chars().filter(|c| *c != '\\' && !c.is_control()).take(64).collect();
        if value.len() % 2 == 1 {
            value.push(' ');
        }
        self.put(ERROR_COMMENT, value.into_bytes());
        self
    }

    fn put(&mut self, tag: (u16, u16), value: Vec<u8>) {
        self.elements.push((tag, value));
    }

    /// The encoded command set, elements in tag order, led by CommandGroupLength.
    pub(crate) fn encode(mut self) -> Vec<u8> {
        self.elements.sort_by_key(|(tag, _)| *tag);
        let body_len: usize = self.elements.iter().map(|(_, v)| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        push_element(&mut out, (0x0000, 0x0000), &(body_len as u32).to_le_bytes());
        for (tag, value) in &self.elements {
            push_element(&mut out, *tag, value);
        }
        out
    }
}

fn uid(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    bytes
}

fn push_element(out: &mut Vec<u8>, (group, element): (u16, u16), value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_bytes(elements: &[((u16, u16), Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, value) in elements {
            push_element(&mut out, *tag, value);
        }
        out
    }

    #[test]
    fn echo_response_answers_the_request_message_id() {
        let bytes = request_bytes(&[
            (AFFECTED_SOP_CLASS_UID, uid("1.2.840.10008.1.1")),
            (COMMAND_FIELD, field::C_ECHO_RQ.to_le_bytes().to_vec()),
            (MESSAGE_ID, 7u16.to_le_bytes().to_vec()),
            (COMMAND_DATA_SET_TYPE, NO_DATA_SET.to_le_bytes().to_vec()),
        ]);
        let request = Request::decode(&bytes).unwrap();
        assert_eq!(request.message_id, 7);
        assert_eq!(request.affected_sop_class_uid, "1.2.840.10008.1.1");
        assert!(!request.has_data_set);
        let response = Response::to(&request, field::C_ECHO_RSP, status::SUCCESS, false).encode();
        let group_length = u32::from_le_bytes(response[8..12].try_into().unwrap()) as usize;
        assert_eq!(group_length, response.len() - 12);
        // MessageIDBeingRespondedTo carries 7; there is no MessageID of our own.
        let decoded = decode_all(&response);
        assert_eq!(decoded.get(&MESSAGE_ID_BEING_RESPONDED_TO).unwrap(), &7u16.to_le_bytes().to_vec());
        assert!(!decoded.contains_key(&MESSAGE_ID));
        assert_eq!(decoded.get(&COMMAND_FIELD).unwrap(), &field::C_ECHO_RSP.to_le_bytes().to_vec());
    }

    #[test]
    fn error_comment_is_cut_to_64_characters_and_padded_even() {
        let request = Request { message_id: 1, has_data_set: true, ..Request::default() };
        let response = Response::to(&request, field::C_STORE_RQ | 0x8000, status::CANNOT_UNDERSTAND, false)
            .error_comment(&"x".repeat(100))
            .encode();
        let comment = decode_all(&response).remove(&ERROR_COMMENT).unwrap();
        assert_eq!(comment.len(), 64);
    }

    #[test]
    fn malformed_commands_are_errors_not_panics() {
        assert!(Request::decode(&[1, 2, 3]).is_err());
        assert!(Request::decode(&request_bytes(&[(COMMAND_FIELD, vec![1])])).is_err());
        let mut long = request_bytes(&[(COMMAND_FIELD, vec![1, 0])]);
        long[4] = 0xFF;
        assert!(Request::decode(&long).is_err());
        assert!(Request::decode(&request_bytes(&[((0x0008, 0x0016), vec![])])).is_err());
    }

    fn decode_all(bytes: &[u8]) -> std::collections::HashMap<(u16, u16), Vec<u8>> {
        let mut map = std::collections::HashMap::new();
        let mut rest = bytes;
        while rest.len() >= 8 {
            let tag = (u16::from_le_bytes([rest[0], rest[1]]), u16::from_le_bytes([rest[2], rest[3]]));
            let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            map.insert(tag, rest[8..8 + len].to_vec());
            rest = &rest[8 + len..];
        }
        map
    }
}
