"""hopscope.analysis: polars batch jobs that find bottlenecks and recommend what to change."""
