// A Node client of the gateway's typed chat API (aigateway.chat.v1.ChatService),
// called through the Envoy edge. Usage:
//   node chat_client.js ADDRESS API_KEY PROTO_ROOT THIRD_PARTY_ROOT GOOGLEAPIS_ROOT
// GOOGLEAPIS_ROOT holds google/rpc/status.proto and error_details.proto, to decode the
// rich error details. Prints one JSON object with what each call returned.
"use strict";

const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const path = require("path");
const protobuf = require("protobufjs");

const [address, apiKey, protoRoot, thirdPartyRoot, googleapisRoot] = process.argv.slice(2);

// google.rpc.Status and its ErrorInfo detail, for reading grpc-status-details-bin.
const errorTypes = new protobuf.Root();
errorTypes.resolvePath = (origin, target) => path.join(googleapisRoot, target);
errorTypes.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = errorTypes.lookupType("google.rpc.Status");
const ErrorInfo = errorTypes.lookupType("google.rpc.ErrorInfo");

function errorInfo(err) {
  const details = err.metadata ? err.metadata.get("grpc-status-details-bin") : [];
  if (details.length === 0) {
    return null;
  }
  const status = Status.decode(details[0]);
  const packed = status.details.find((any) => any.type_url.endsWith("/google.rpc.ErrorInfo"));
  if (!packed) {
    return null;
  }
  const info = ErrorInfo.decode(packed.value);
  return { reason: info.reason, domain: info.domain, metadata: info.metadata };
}

const definition = protoLoader.loadSync(
  path.join(protoRoot, "aigateway/chat/v1/chat_service.proto"),
  { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
    includeDirs: [protoRoot, thirdPartyRoot] },
);
const { ChatService } = grpc.loadPackageDefinition(definition).aigateway.chat.v1;
const client = new ChatService(address, grpc.credentials.createInsecure());

function metadata(key) {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${key}`);
  return md;
}

function deadline() {
  return { deadline: Date.now() + 20000 };
}

function params(model, text) {
  return { model, messages: [{ role: "ROLE_USER", content: text }] };
}

function unary(key, model, text) {
  return new Promise((resolve) => {
    client.CreateChatCompletion({ params: params(model, text) }, metadata(key), deadline(), (err, response) => {
      if (err) {
        resolve({ code: err.code, details: err.details, error_info: errorInfo(err) });
      } else {
        resolve({ code: 0, content: response.completion.choices[0].message.content,
                  finish_reason: response.completion.choices[0].finish_reason,
                  prompt_tokens: response.completion.usage.prompt_tokens,
                  cache: response.gateway.cache, deployment: response.gateway.deployment });
      }
    });
  });
}

function streamed(key, model, text) {
  return new Promise((resolve) => {
    const call = client.StreamChatCompletion(
      { params: { ...params(model, text), stream_options: { include_usage: true } } },
      metadata(key), deadline());
    let content = "";
    let chunks = 0;
    let usage = null;
    let gateway = null;
    call.on("data", (message) => {
      if (message.chunk) {
        chunks += 1;
        for (const choice of message.chunk.choices) {
          content += choice.delta.content || "";
        }
        if (message.chunk.usage && message.chunk.usage.total_tokens > 0) {
          usage = message.chunk.usage;
        }
      }
      if (message.gateway) {
        gateway = message.gateway;
      }
    });
    call.on("error", (err) => resolve({ code: err.code, details: err.details }));
    call.on("end", () => resolve({ code: 0, content, chunks, usage, gateway }));
  });
}

async function main() {
  const result = {
    unary: await unary(apiKey, "gpt-4o-mini", "Hello from Node"),
    stream: await streamed(apiKey, "gpt-4o-mini", "Stream to Node"),
    bad_key: await unary("sk-aigw-invalid0-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "gpt-4o-mini", "hi"),
    unknown_model: await unary(apiKey, "no-such-model", "hi"),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  client.close();
}

main().catch((err) => {
  process.stderr.write(`node client failed: ${err.stack}\n`);
  process.exit(1);
});
