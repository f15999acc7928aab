# One image for every service of ours (api, worker, streams, celery); the command picks the role.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli ./cli
COPY service ./service
COPY stores ./stores
COPY analysis ./analysis
COPY keye_model ./keye_model
COPY kernels ./kernels
COPY workers ./workers
COPY streams ./streams
COPY api ./api
COPY training ./training
COPY corpus ./corpus
COPY evaluation ./evaluation
COPY demo ./demo
# devstack/ (the development servers), bench/ and tests/ stay out of the image, as out of the wheel
RUN pip install --no-cache-dir .
ENV KEYE_DATA_DIR=/data
VOLUME ["/data", "/models"]
ENTRYPOINT ["keye"]
