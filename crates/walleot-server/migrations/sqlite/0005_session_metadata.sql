-- The merchant's labels of a session, as a JSON object of strings; NULL when none.
ALTER TABLE sessions ADD COLUMN metadata TEXT;
