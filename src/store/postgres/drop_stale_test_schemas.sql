-- Drops up to 20 schemas that tests made over an hour ago (a name starts with the second it was
-- made), so the `test` database does not grow by a score of schemas a run; one caller at a time
-- cleans, the others skip it. Run by the unit tests' and the integration tests' fresh schemas.
DO $$
DECLARE stale text;
BEGIN
    IF pg_try_advisory_xact_lock(hashtext('aioops test schemas')) THEN
        FOR stale IN
            SELECT nspname FROM pg_namespace
            WHERE nspname ~ '^t_[0-9]{10}_'
              AND split_part(nspname, '_', 2)::bigint < extract(epoch FROM now())::bigint - 3600
            LIMIT 20
        LOOP
            EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', stale);
        END LOOP;
    END IF;
END $$;
