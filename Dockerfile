# ethwatch: one small image for every sidecar (`ethwatch execution`, `ethwatch consensus`,
# `ethwatch network`). Build: docker build -t ethwatch .   (see docs/container.md; not buildable
# on the project's CI machines, which have no container engine)
#
# The binary is static (glibc with crt-static, built by scripts/build-static.sh, as benchmarked in
# docs/benchmarks.md), so the runtime stage needs no libc: only CA certificates and a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ARG ETHWATCH_REVISION=unknown
ENV ETHWATCH_REVISION=${ETHWATCH_REVISION}
ENV CARGO_TARGET_DIR=/src/target
RUN cp "$(scripts/build-static.sh)" /ethwatch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /ethwatch /usr/local/bin/ethwatch
USER nonroot:nonroot
EXPOSE 9545
ENTRYPOINT ["/usr/local/bin/ethwatch"]
CMD ["--help"]
