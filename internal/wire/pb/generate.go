// Package pb holds the Go types generated from proto/pull.proto, Bitrix's
// push-server protobuf schema. The generated file is committed; regenerating
// needs protoc (Debian: protobuf-compiler) and protoc-gen-go v1.36.12.
package pb

//go:generate protoc --proto_path=../../../proto --go_out=. --go_opt=paths=source_relative pull.proto
