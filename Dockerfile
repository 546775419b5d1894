# ethwatch: one small image for every sidecar (`ethwatch execution`, `ethwatch consensus`).
# Build: docker build -t ethwatch .   (see docs/container.md; not buildable on the project's CI
# machines, which have no container engine)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ARG ETHWATCH_REVISION=unknown
ENV ETHWATCH_REVISION=${ETHWATCH_REVISION}
RUN cargo build --release --locked -p ethwatch \
 && cp target/release/ethwatch /ethwatch

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /ethwatch /usr/local/bin/ethwatch
USER nonroot:nonroot
EXPOSE 9545
ENTRYPOINT ["/usr/local/bin/ethwatch"]
CMD ["--help"]
