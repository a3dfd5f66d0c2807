-- The relational projection of Tessera's store: patients, devices, vital-sign measurements
-- (partitioned by month) and the alerts raised on them, plus the projection's checkpoint.
-- Written only by the projection; readers (reports, BI) must treat it as read-only.

-- One row per current Patient. `id` is the UUIDv5 of "Patient/<fhir id>", so other tables
-- point at a patient without looking it up.
create table patients (
    id uuid primary key,
    fhir_id text not null unique,
    fhir_version bigint not null,
    -- A medical record number belongs to one patient: when two patients carry the same one,
    -- the newest writer holds it and the others' column is null.
    mrn text unique,
    family_name text,
    given_names text,
    birth_date date,
    gender text check (gender in ('male', 'female', 'other', 'unknown')),
    phone text,
    email text,
    active boolean not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

-- One row per current Device; `id` is the UUIDv5 of "Device/<fhir id>".
create table devices (
    id uuid primary key,
    fhir_id text not null unique,
    fhir_version bigint not null,
    -- Like patients.mrn: the newest writer of a serial number holds it.
    serial_number text unique,
    type text,
    manufacturer text,
    model text,
    firmware_version text,
    status text not null check (status in ('active', 'inactive', 'maintenance', 'retired')),
    -- The newest measured_at of the device's measurements.
    last_seen timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

-- One row per vital-sign value of a current Observation (two for a blood-pressure panel).
-- Partitioned by month (measurements_yYYYYmMM, created by the projection as data needs them;
-- there is no default partition). There are no foreign keys to patients or devices: the
-- feed may deliver an Observation before the Patient or Device it references, a resource
-- may be deleted while its measurements stay, and foreign keys on a partitioned table would
-- make every partition operation pay for them. patient_id and device_id are the UUIDv5 ids
-- those rows have (or will have).
create table measurements (
    id bigserial,
    observation_fhir_id text not null,
    observation_version bigint not null,
    type text not null,
    value double precision not null,
    unit text not null,
    measured_at timestamptz not null,
    patient_id uuid,
    patient_fhir_id text,
    device_id uuid,
    device_fhir_id text,
    -- Unique keys of a partitioned table must contain the partition key.
    primary key (id, measured_at),
    unique (observation_fhir_id, type, measured_at)
) partition by range (measured_at);

create index measurements_device_time on measurements (device_id, measured_at desc);
create index measurements_patient_time on measurements (patient_id, measured_at desc);
create index measurements_observation on measurements (observation_fhir_id);

-- Alerts raised by the configured threshold rules, one per (Observation, measurement type).
-- An acknowledged alert outlives changes to its Observation; an unacknowledged one is
-- re-evaluated whenever the Observation changes.
create table alerts (
    id bigserial primary key,
    observation_fhir_id text not null,
    measurement_type text not null,
    value double precision not null,
    unit text not null,
    measured_at timestamptz not null,
    severity text not null check (severity in ('low', 'medium', 'high', 'critical')),
    rule text not null,
    patient_id uuid,
    patient_fhir_id text,
    device_id uuid,
    device_fhir_id text,
    created_at timestamptz not null default now(),
    acknowledged boolean not null default false,
    acknowledged_by text,
    acknowledged_at timestamptz,
    unique (observation_fhir_id, measurement_type)
);

create index alerts_open on alerts (severity, created_at) where not acknowledged;
create index alerts_patient on alerts (patient_fhir_id, created_at desc);

-- How far each projection kept in this database has applied the change feed. Every batch
-- locks its row, checks it and moves it in the batch's own transaction.
create table projection_checkpoints (
    name text primary key,
    seq bigint not null,
    updated_at timestamptz
);

insert into projection_checkpoints (name, seq, updated_at) values ('postgres', 0, now());
