"""A tiny faust-streaming app for the broker compatibility test: count keys in a changelog-backed
table and forward each message with its running count. Run as `python faust_echo_app.py worker`."""

import os

import faust

PREFIX = os.environ["ECHO_PREFIX"]
app = faust.App(
    f"{PREFIX}-app",
    broker=f"kafka://{os.environ['ECHO_BOOTSTRAP']}",
    store="memory://",
    topic_partitions=1,
    web_enabled=False,
    producer_enable_idempotence=True,
)
source = app.topic(f"{PREFIX}.in", key_type=str, value_type=str)
sink = app.topic(f"{PREFIX}.out", key_type=str, value_type=str)
counts = app.Table(f"{PREFIX}-counts", default=int, partitions=1)


@app.agent(source)
async def echo(stream):
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=f"{value}:{counts[key]}")


if __name__ == "__main__":
    app.main()
