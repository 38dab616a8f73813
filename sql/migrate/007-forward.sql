-- Schema 7: where each [forward NAME] stands (slhookd's forwarding, and
-- slhookctl forward status / rewind).
CREATE TABLE forward_cursors (
    forward         TEXT    PRIMARY KEY,        -- [forward NAME]
    cursor          INTEGER NOT NULL,           -- every event with an id up to it was delivered (2xx) or not for it
    rewound         INTEGER NOT NULL DEFAULT 0, -- counts slhookctl forward rewind: the forwarder takes cursor again
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0, -- events delivered
    last_success_at TEXT,
    last_error      TEXT,                       -- the last failed attempt, NULL once one succeeds
    last_error_at   TEXT
);

PRAGMA user_version = 7;
