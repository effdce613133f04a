-- API users and tokens (pkg/auth).

CREATE TABLE users (
    id            bigserial   PRIMARY KEY,
    username      text        NOT NULL UNIQUE,
    password_hash text        NOT NULL DEFAULT '',
    roles         text[]      NOT NULL DEFAULT '{}',
    disabled      boolean     NOT NULL DEFAULT false,
    created       timestamptz NOT NULL
);

CREATE TABLE tokens (
    id      bigserial   PRIMARY KEY,
    user_id bigint      NOT NULL REFERENCES users (id),
    name    text        NOT NULL DEFAULT '',
    hash    text        NOT NULL UNIQUE,
    created timestamptz NOT NULL,
    revoked timestamptz                    -- NULL: valid
);
CREATE INDEX tokens_user ON tokens (user_id);
