"""cohort-streamer: Kafka cohort enter/exit events -> MoEngage Cohort Sync."""

__version__ = "0.1.0"
