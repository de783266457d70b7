-- Migration 0012_request_search. Never edit one that has shipped: add a new file.
-- The web inbox's history search: a trigram full-text index of each request's action,
-- requester and summary (any substring of three characters or more, any case), so a search
-- over 100,000 requests reads the matching rows instead of every row. It indexes the
-- requests table's own text (external content): nothing is stored twice.
CREATE VIRTUAL TABLE requests_text USING fts5(
    action, requested_by, summary, content = 'requests', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO requests_text (requests_text) VALUES ('rebuild');

CREATE TRIGGER requests_text_filed AFTER INSERT ON requests BEGIN
    INSERT INTO requests_text (rowid, action, requested_by, summary)
    VALUES (NEW.rowid, NEW.action, NEW.requested_by, NEW.summary);
END;
-- Requests are never deleted nor their text changed; should that ever happen, the index follows.
CREATE TRIGGER requests_text_changed AFTER UPDATE OF action, requested_by, summary ON requests BEGIN
    INSERT INTO requests_text (requests_text, rowid, action, requested_by, summary)
    VALUES ('delete', OLD.rowid, OLD.action, OLD.requested_by, OLD.summary);
    INSERT INTO requests_text (rowid, action, requested_by, summary)
    VALUES (NEW.rowid, NEW.action, NEW.requested_by, NEW.summary);
END;
CREATE TRIGGER requests_text_deleted AFTER DELETE ON requests BEGIN
    INSERT INTO requests_text (requests_text, rowid, action, requested_by, summary)
    VALUES ('delete', OLD.rowid, OLD.action, OLD.requested_by, OLD.summary);
END;
