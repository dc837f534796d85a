-- Incidents of the last week with how long each lasted and what Governor did; an
-- incident still open has NULL for resolved and seconds_open.
-- Usage: governor query --file incidents_last_week
SELECT incident_id, function, team,
       argMax(status, time) AS last_status,
       max(severity) AS worst_severity,
       argMin(title, time) AS first_title,
       min(opened_at) AS opened,
       maxIfOrNull(resolved_at, status = 'resolved') AS resolved,
       dateDiff('second', opened, resolved) AS seconds_open,
       argMax(actions, time) AS actions_taken,
       max(cost_impact_usd_per_hour) AS peak_usd_per_hour
FROM incidents FINAL
WHERE time >= now() - INTERVAL 7 DAY
GROUP BY incident_id, function, team
ORDER BY opened DESC, incident_id;
