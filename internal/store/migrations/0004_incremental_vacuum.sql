-- berth:no-transaction
-- 0004: give deleted rows' pages back to the file system. auto_vacuum only
-- changes on a database that has tables through a VACUUM, which cannot run
-- in a transaction; both are idempotent, so a crash before user_version is
-- set just runs them again. From now on the store runs
-- PRAGMA incremental_vacuum after deletes.
PRAGMA auto_vacuum = INCREMENTAL;
VACUUM;
