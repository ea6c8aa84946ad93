-- Transactions other servers sent us (PUT /_matrix/federation/v1/send/{txnId}) with the
-- answer we gave, so a retried transaction gets the same answer and is not processed twice.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_inbound_txns_received ON federation_inbound_txns (received_ts);
