"""The worker process: the Faust app (:mod:`.app`), its routes (:mod:`.routes`), batched
ingest of the hot topics (:mod:`.batch_ingest`), decoding at the edge (:mod:`.decoding`),
start-up checks (:mod:`.prepare`) and the run loop (:mod:`.worker`).

May import every production layer below it; nothing imports it but the CLI.
"""
