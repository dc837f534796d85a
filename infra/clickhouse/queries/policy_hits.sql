-- Which policies acted most in the last week, on how many functions, by decision.
-- Usage: governor query --file policy_hits
SELECT policy, decision, count() AS decisions, uniqExact(function) AS functions,
       any(reason) AS example
FROM policy_decisions FINAL
WHERE time >= now() - INTERVAL 7 DAY
GROUP BY policy, decision
ORDER BY decisions DESC;
