-- Migration 0007_note_prompts. Never edit one that has shipped: add a new file.
-- A reply prompt asks either why an approver rejects ('reason') or what note goes with their
-- approval ('note'); the answer to a 'reason' prompt can only reject, to a 'note' one only approve.
ALTER TABLE reason_prompts ADD COLUMN kind TEXT NOT NULL DEFAULT 'reason' CHECK (kind IN ('reason', 'note'));
