"""Analysis jobs: each ``run(data, ...)`` reads a Dataset and returns a JobResult."""
