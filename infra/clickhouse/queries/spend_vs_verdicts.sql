-- Spend per function and hour of the last day, beside the verdicts issued that hour.
-- Usage: governor query --file spend_vs_verdicts
SELECT c.function, c.hour, round(c.usd, 4) AS usd, c.calls, c.blocked,
       nullIf(v.verdicts, '') AS verdicts  -- NULL: no verdict that hour
FROM (SELECT function, toStartOfHour(time) AS hour, sum(cost_usd) AS usd, count() AS calls,
             countIf(outcome IN ('throttled', 'isolated')) AS blocked
      FROM cost_events FINAL WHERE time >= now() - INTERVAL 1 DAY
      GROUP BY function, hour) AS c
LEFT JOIN (SELECT function, toStartOfHour(time) AS hour,
                  arrayStringConcat(groupArray(action), ', ') AS verdicts
           FROM verdicts FINAL WHERE time >= now() - INTERVAL 1 DAY
           GROUP BY function, hour) AS v
       ON c.function = v.function AND c.hour = v.hour
ORDER BY c.usd DESC, c.function, c.hour
LIMIT 50;
