-- Migration 0009_edit_prompts. Never edit one that has shipped: add a new file.
-- "Edit before approving" in a chat. An edit prompt is a reply prompt that asks one approver
-- for new arguments of a request; only that approver's reply to it counts.
CREATE TABLE edit_prompts (
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    message    TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    user_id    TEXT NOT NULL,   -- the channel's id of the approver asked
    created_at REAL NOT NULL,
    PRIMARY KEY (channel, address, message)
) STRICT;

-- A proposed edit: the arguments an approver replied with, checked, kept until they confirm
-- ("Approve edited") or drop it ("Discard"). Its id is never reused (AUTOINCREMENT), so a
-- confirm button signed for one edit is worthless on any other. closed_at: confirmed or
-- discarded; a closed edit decides nothing more.
CREATE TABLE proposed_edits (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    channel    TEXT NOT NULL,
    address    TEXT NOT NULL,
    request_id TEXT NOT NULL REFERENCES requests (id),
    user_id    TEXT NOT NULL,   -- the approver who proposed it: only they may confirm it
    details    TEXT NOT NULL,   -- the edited arguments, canonical JSON
    created_at REAL NOT NULL,
    closed_at  REAL
) STRICT;
