"""Speaker diarization service: the job handler, its engine and its event doors."""
