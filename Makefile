# The two commands a newcomer needs are `make run` and `make test`.
GO ?= go
# An iteration count, not a duration: a -fuzztime deadline can end the run
# while the engine minimizes a new input, which go test reports as a failure.
FUZZTIME ?= 30000x
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run test unit interop fuzz-smoke lint

# Runs the server with the embedded default store: clients on :8080, the
# trusted routes (/pub/, /api/, /server-stat/) on 127.0.0.1:8895.
run:
	$(GO) run ./cmd/pushpull serve

# Every test: vet, the race-checked unit and integration tests, the
# interop tests against the official PullClient (Node), and a short run of
# every fuzz target.
test: unit interop fuzz-smoke

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./internal/... ./cmd/... ./deploy/... ./pkg/...

interop:
	$(GO) test -count=1 -timeout 8m ./interop/...

# go test -fuzz takes one target of one package at a time.
fuzz-smoke:
	$(GO) test -run='^$$' -fuzz='^FuzzParseList$$' -fuzztime=$(FUZZTIME) ./internal/channel/
	$(GO) test -run='^$$' -fuzz='^FuzzParseTextFrames$$' -fuzztime=$(FUZZTIME) ./internal/wire/
	$(GO) test -run='^$$' -fuzz='^FuzzTextFrameRoundTrip$$' -fuzztime=$(FUZZTIME) ./internal/wire/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRequestBatch$$' -fuzztime=$(FUZZTIME) ./internal/wire/
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./internal/broker/redis/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRPC$$' -fuzztime=$(FUZZTIME) ./internal/wire/
	$(GO) test -run='^$$' -fuzz='^FuzzV5ClientFrame$$' -fuzztime=$(FUZZTIME) ./internal/realtime/
	$(GO) test -run='^$$' -fuzz='^FuzzParsePHPForm$$' -fuzztime=$(FUZZTIME) ./internal/rest/
	$(GO) test -run='^$$' -fuzz='^FuzzRESTParams$$' -fuzztime=$(FUZZTIME) ./internal/rest/
	$(GO) test -run='^$$' -fuzz='^FuzzOrderedJSONMatchesEncodingJSON$$' -fuzztime=$(FUZZTIME) ./internal/rest/
	$(GO) test -run='^$$' -fuzz='^FuzzVerify$$' -fuzztime=$(FUZZTIME) ./internal/token/
	$(GO) test -run='^$$' -fuzz='^FuzzFrameReader$$' -fuzztime=$(FUZZTIME) ./internal/realtime/
	$(GO) test -run='^$$' -fuzz='^FuzzClientIDOf$$' -fuzztime=$(FUZZTIME) ./internal/tenant/
	$(GO) test -run='^$$' -fuzz='^FuzzEachOutgoing$$' -fuzztime=$(FUZZTIME) ./pkg/pullclient/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
