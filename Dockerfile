# The kopsdr worker, FROM scratch: one static Go binary plus CA roots for AWS.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/kopsdr-worker ./worker && \
    CGO_ENABLED=0 go build -trimpath -o /out/kopsdr ./starter

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/kopsdr-worker /out/kopsdr /
ENTRYPOINT ["/kopsdr-worker"]
