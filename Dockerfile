# One image for every service of ours (api, worker, streams, celery); the command picks the role.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY keye ./keye
COPY keye_model ./keye_model
COPY kernels ./kernels
COPY workers ./workers
COPY streams ./streams
COPY api ./api
COPY training ./training
COPY bench ./bench
RUN pip install --no-cache-dir -e .
ENV KEYE_DATA_DIR=/data
VOLUME ["/data", "/models"]
ENTRYPOINT ["keye"]
