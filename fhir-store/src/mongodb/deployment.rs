//! The start-up check of the MongoDB deployment: transactions need a replica set or a sharded
//! cluster of MongoDB 6.0 or newer; anything else is refused with what to do about it.

use mongodb::bson::{Bson, Document};

use crate::StoreError;

/// Wire version of MongoDB 6.0, the oldest release the backend is written for.
const MIN_WIRE_VERSION: i64 = 17;

/// The kind of deployment `hello` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// A replica set member (the driver then talks to the primary).
    ReplicaSet { name: String },
    /// A `mongos` router of a sharded cluster.
    Sharded,
}

/// How to turn a standalone `mongod` into a single-node replica set, for the refusal message.
pub(crate) const SINGLE_NODE_REPLICA_SET_HINT: &str = "start mongod with `--replSet rs0` (or `replication.replSetName: rs0` in mongod.conf), \
run `mongosh --eval 'rs.initiate({_id: \"rs0\", members: [{_id: 0, host: \"127.0.0.1:27017\"}]})'` once (a bare `rs.initiate()` \
registers the host name, which must then resolve to an address mongod listens on), and connect with \
`mongodb://127.0.0.1:27017/?replicaSet=rs0`";

/// Classifies the answer of the `hello` command, refusing what cannot run transactions.
pub(crate) fn check(hello: &Document) -> Result<Deployment, StoreError> {
    let wire = match hello.get("maxWireVersion") {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        _ => 0,
    };
    if wire < MIN_WIRE_VERSION {
        return Err(refused(format!(
            "the MongoDB server is too old (wire version {wire}); Tessera needs MongoDB 6.0 or newer"
        )));
    }
    if hello.get_str("msg").is_ok_and(|msg| msg == "isdbgrid") {
        return Ok(Deployment::Sharded);
    }
    if let Ok(name) = hello.get_str("setName") {
        // With `directConnection=true` the driver talks to whichever member the URI names; a
        // secondary would pass the checks above and then fail every write with
        // `NotWritablePrimary`, reported as an outage. Say what is wrong instead.
        if !hello.get_bool("isWritablePrimary").unwrap_or(false) {
            return Err(refused(format!(
                "the MongoDB server is a member of replica set {name} but not its primary; connect to the set \
                 (`mongodb://host1,host2/?replicaSet={name}`) rather than directly to one member"
            )));
        }
        return Ok(Deployment::ReplicaSet { name: name.to_string() });
    }
    Err(refused(format!(
        "the MongoDB server is a standalone mongod; Tessera needs multi-document transactions, which only a \
         replica set or a sharded cluster offers. For a single machine, {SINGLE_NODE_REPLICA_SET_HINT}"
    )))
}

fn refused(message: String) -> StoreError {
    StoreError::Backend { message, source: None }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn replica_set_and_sharded_cluster_are_accepted() {
        let member = doc! { "isWritablePrimary": true, "setName": "rs0", "maxWireVersion": 21, "ok": 1.0 };
        assert_eq!(check(&member).unwrap(), Deployment::ReplicaSet { name: "rs0".into() });
        let mongos = doc! { "isWritablePrimary": true, "msg": "isdbgrid", "maxWireVersion": 25_i64, "ok": 1.0 };
        assert_eq!(check(&mongos).unwrap(), Deployment::Sharded);
    }

    #[test]
    fn standalone_is_refused_with_the_replica_set_recipe() {
        let standalone = doc! { "isWritablePrimary": true, "maxWireVersion": 21, "ok": 1.0 };
        let message = check(&standalone).unwrap_err().to_string();
        assert!(message.contains("standalone"), "{message}");
        assert!(message.contains("--replSet rs0") && message.contains("rs.initiate("), "{message}");
    }

    #[test]
    fn servers_older_than_6_0_are_refused() {
        let old = doc! { "isWritablePrimary": true, "setName": "rs0", "maxWireVersion": 13, "ok": 1.0 };
        let message = check(&old).unwrap_err().to_string();
        assert!(message.contains("6.0") && message.contains("wire version 13"), "{message}");
        assert!(check(&doc! { "ok": 1.0 }).is_err());
    }

    #[test]
    fn a_secondary_reached_directly_is_refused() {
        let secondary = doc! { "isWritablePrimary": false, "secondary": true, "setName": "rs0", "maxWireVersion": 21, "ok": 1.0 };
        let message = check(&secondary).unwrap_err().to_string();
        assert!(message.contains("not its primary") && message.contains("replicaSet=rs0"), "{message}");
    }
}
