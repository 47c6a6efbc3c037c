-- The demo bot's own data, applied to its SQLite file by load_demo_bot. Safe
-- to re-run: nothing here replaces what exists. STRICT makes SQLite refuse a
-- value of the wrong type, as PostgreSQL does.
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    drink TEXT NOT NULL,
    size TEXT,
    quantity INTEGER CHECK (quantity > 0),
    name TEXT,
    phone TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
) STRICT;

CREATE INDEX IF NOT EXISTS orders_user_id_id ON orders (user_id, id);
