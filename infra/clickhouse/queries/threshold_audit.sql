-- Every live threshold change of the last 30 days: who, when, old -> new, undone or not.
-- Usage: governor query --file threshold_audit
SELECT c.time, c.actor, c.scope, c.key, c.old, c.new, c.reason, c.change_id,
       c.undo_of != '' AS is_undo,
       c.change_id IN (SELECT undo_of FROM threshold_changes FINAL) AS undone
FROM threshold_changes AS c FINAL
WHERE c.time >= now() - INTERVAL 30 DAY
ORDER BY c.time DESC;
