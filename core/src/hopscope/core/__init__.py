"""hopscope.core: what every layer shares and nothing else — the base error, the endpoint and
directory settings, and the Kafka and Elasticsearch security settings read from ``HOPSCOPE_*``.

``core`` imports no layer (ingest, processors, analysis) and not the dev-stack launcher; client
libraries (kafka-python, elasticsearch) are imported only inside the functions that need them, so
the SDK can depend on ``core`` and stay light.
"""
