-- Per-tenant read-only analyst access (ClickHouse server only; chDB has no users or row policies).
-- Rendered by agenttrail.sinks.clickhouse.analysts.analyst_user_sql(); placeholders are string.Template names.
-- $tenant is a validated tenant id ([a-z0-9][a-z0-9_-]*), $user = analyst_<tenant>, $db the database.
CREATE USER IF NOT EXISTS `$user`
    IDENTIFIED WITH sha256_hash BY '$password_sha256'
    DEFAULT DATABASE `$db`
    SETTINGS readonly = 1, max_execution_time = $max_execution_time;

-- Every table that carries tenant_id; the views read these tables as the invoking user
-- (normal views run with SQL SECURITY INVOKER), so the policy filters every view too.
CREATE ROW POLICY IF NOT EXISTS `tenant_$tenant`
    ON `$db`.events, `$db`.sessions_agg, `$db`.dlq, `$db`.checkpoints
    FOR SELECT USING tenant_id = '$tenant' TO `$user`;

CREATE QUOTA IF NOT EXISTS `quota_$tenant`
    FOR INTERVAL 1 hour MAX queries = $queries_per_hour, read_rows = $read_rows_per_hour,
        result_rows = $result_rows_per_hour, execution_time = $execution_seconds_per_hour
    TO `$user`;

GRANT SELECT ON `$db`.* TO `$user`
