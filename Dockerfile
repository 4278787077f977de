# embedrt's container image. Untested here: these machines run no Docker daemon. The runtime stage
# holds exactly what scripts/setup.sh and the release build produce, nothing else: the embedrt
# binary and its backend plugins, libonnxruntime.so from the PyPI onnxruntime wheel, and the
# default model folder (all-MiniLM-L6-v2 with its fp32 and int8 ONNX graphs).
#
#   docker build -t embedrt .
#   docker run -p 8080:8080 -p 50051:50051 embedrt
#
# Configuration: /etc/embedrt/embedrt.toml (deploy/docker/embedrt.toml: the default model, listening
# on all interfaces, the admin endpoint off); mount another there (deploy/kubernetes/configmap.yaml
# does). More models: mount their folders and point `path` at them.

FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release build of scripts/lib.sh: the assets, the server and every backend plugin.
RUN bash -c 'source scripts/lib.sh && build_release' \
    && mkdir -p /out/bin /out/lib /out/models /out/etc \
    && cp target/release/embedrt target/release/libembedrt_plugin_*.so /out/bin/ \
    && cp .assets/onnxruntime/libonnxruntime.so /out/lib/ \
    && cp -r .assets/models/all-MiniLM-L6-v2 /out/models/ \
    && cp deploy/docker/embedrt.toml /out/etc/embedrt.toml

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bin/ /opt/embedrt/bin/
COPY --from=build /out/lib/ /opt/embedrt/lib/
COPY --from=build /out/models/ /opt/embedrt/models/
COPY --from=build /out/etc/embedrt.toml /etc/embedrt/embedrt.toml
# The onnx backend finds ONNX Runtime here; plugins are found beside the binary.
ENV ORT_DYLIB_PATH=/opt/embedrt/lib/libonnxruntime.so
USER 65532:65532
EXPOSE 8080 50051
ENTRYPOINT ["/opt/embedrt/bin/embedrt"]
CMD ["serve", "--config", "/etc/embedrt/embedrt.toml"]
