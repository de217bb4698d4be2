"""cohort-streamer: Kafka cohort enter/exit events -> MoEngage Cohort Sync."""
