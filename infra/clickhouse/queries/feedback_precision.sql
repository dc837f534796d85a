-- How often each function's and each detector's incidents were real, from on-call's
-- feedback (`governor feedback INCIDENT_ID false-alarm|confirmed --reason ...`).
-- Usage: governor query --file feedback_precision
SELECT function, detector,
       countIf(judgement = 'confirmed') AS confirmed,
       countIf(judgement = 'false-alarm') AS false_alarms,
       round(confirmed / nullIf(confirmed + false_alarms, 0), 3) AS precision
FROM feedback FINAL
GROUP BY function, detector
ORDER BY false_alarms DESC, function, detector;
