# mcbn container image for people who use Docker.
#
# The reproducible build is `go run ./build/image --out DIR` (no daemon,
# pinned CA bundle, fixed timestamps; it prints the digest to pin). This
# Dockerfile gives the same layout (static /mcbn, CA roots, uid 65532, no
# shell) but its digest depends on the base image and the Docker version, so
# do not pin a release policy to a digest built here unless you rebuild
# with the same pinned inputs.
#
# One image for both roles; the command picks the role:
#
#   docker build -t mcbn .
#   docker run --rm -v $PWD:/etc/mcbn mcbn proxy client --config /etc/mcbn/client.yaml
#   docker run --rm -v $PWD:/etc/mcbn mcbn shareholder serve --config /etc/mcbn/alice.yaml

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${VERSION}" -o /out/mcbn ./cmd/mcbn

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcbn /mcbn
USER 65532:65532
# Confidential Space: let the operator pass the subcommand and config; the
# attestation reports them (submods.container.args) for release policies.
LABEL tee.launch_policy.allow_cmd_override="true" \
      tee.launch_policy.log_redirect="always"
ENTRYPOINT ["/mcbn"]
CMD ["proxy", "--help"]
