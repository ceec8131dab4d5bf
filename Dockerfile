# syntax=docker/dockerfile:1
# Build: docker build -t verdict .
# Try:   docker run -p 8080:8080 verdict serve --demo
# Run:   docker run -p 8080:8080 -e VERDICT_CSIDE_HEADER="Authorization: Bearer ..." verdict

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags="-s -w -X main.version=${VERSION}" \
      -o /out/verdict ./cmd/verdict

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/verdict /verdict
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/verdict"]
CMD ["serve"]
