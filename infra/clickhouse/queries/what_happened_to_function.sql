-- What did Governor do to a function last week, and why? One timeline, oldest first:
-- anomalies, policy decisions, verdicts and pages.
-- Usage: governor query --file what_happened_to_function --param function=checkout
SELECT time, kind, what, detail, why
FROM (
    SELECT time, 'anomaly' AS kind, detector AS what, severity AS detail, explanation AS why
    FROM anomalies FINAL
    WHERE function = {function:String} AND time >= now() - INTERVAL 7 DAY
    UNION ALL
    SELECT time, 'decision', policy,
           decision || if(isNull(rate_rps), '', ' ' || toString(rate_rps) || ' rps'), reason
    FROM policy_decisions FINAL
    WHERE function = {function:String} AND time >= now() - INTERVAL 7 DAY
    UNION ALL
    SELECT time, 'verdict', action, issuer, reason
    FROM verdicts FINAL
    WHERE function = {function:String} AND time >= now() - INTERVAL 7 DAY
    UNION ALL
    SELECT time, 'page', status, severity, title
    FROM incidents FINAL
    WHERE function = {function:String} AND time >= now() - INTERVAL 7 DAY
)
ORDER BY time, kind;
