-- Schema 7: where each [forward NAME] stands (see sql/migrate/007-forward.sql).
CREATE TABLE forward_cursors (
    forward         text    COLLATE "C" PRIMARY KEY,
    cursor          bigint  NOT NULL,
    rewound         bigint  NOT NULL DEFAULT 0,
    created_at      text    COLLATE "C" NOT NULL,
    updated_at      text    COLLATE "C" NOT NULL,
    delivered       bigint  NOT NULL DEFAULT 0,
    last_success_at text    COLLATE "C",
    last_error      text    COLLATE "C",
    last_error_at   text    COLLATE "C"
);
UPDATE slhookd_schema SET version = 7;
