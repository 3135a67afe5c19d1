-- Edge filter of the AI gateway: runs first on requests and last on responses.
--
-- Requests: removes every x-aigw-* header a client sent, so that only the values
-- ext_authz sets after it (tenant, key id, roles, budget) ever reach the services.
--
-- Responses: gives HTTP clients each gRPC error in OpenAI's
-- {"error": {"message", "type", "param", "code"}} shape. The transcoder has already
-- mapped the gRPC status to the HTTP status and written a google.rpc.Status JSON body.
-- This filter replaces that body with the router's x-aigw-error-body metadata. When a
-- call ended without that metadata, it builds an OpenAI body from the Status JSON.
-- Responses to gRPC clients (content-type application/grpc) pass through unchanged.

local ERROR_BODY_HEADER = "x-aigw-error-body"
local CLIENT_HEADER_PREFIX = "x-aigw-"
-- Dynamic metadata that local_reply_config reads to leave gRPC clients' replies alone:
-- by then the transcoder has set content-type application/grpc on REST requests too.
local METADATA_NAMESPACE = "aigw.edge"
local GRPC_CLIENT_KEY = "grpc_client"

-- OpenAI error `type` and `code` for a gRPC status code (google.rpc.Code numbers).
local GRPC_ERRORS = {
  ["1"] = { "server_error", "cancelled" },
  ["2"] = { "server_error", "internal_error" },
  ["3"] = { "invalid_request_error", "invalid_request" },
  ["4"] = { "server_error", "timeout" },
  ["5"] = { "invalid_request_error", "not_found" },
  ["6"] = { "invalid_request_error", "already_exists" },
  ["7"] = { "invalid_request_error", "permission_denied" },
  ["8"] = { "rate_limit_error", "rate_limit_exceeded" },
  ["9"] = { "invalid_request_error", "failed_precondition" },
  ["10"] = { "server_error", "aborted" },
  ["11"] = { "invalid_request_error", "out_of_range" },
  ["12"] = { "invalid_request_error", "unimplemented" },
  ["13"] = { "server_error", "internal_error" },
  ["14"] = { "server_error", "service_unavailable" },
  ["15"] = { "server_error", "internal_error" },
  ["16"] = { "invalid_request_error", "invalid_api_key" },
}

local JSON_ESCAPES = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

-- Returns text escaped for use inside a JSON string.
local function json_escape(text)
  return (string.gsub(text, '[%c"\\]', function(char)
    return JSON_ESCAPES[char] or string.format("\\u%04x", string.byte(char))
  end))
end

-- grpc-message is percent-encoded on the wire (gRPC over HTTP/2 protocol).
local function percent_decode(text)
  return (string.gsub(text, "%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- Returns the "message" value of the transcoder's google.rpc.Status JSON, still
-- JSON-escaped, or nil. The transcoder writes compact JSON, so a scan for the key suffices.
local function status_message(status_json)
  local _, value_start = string.find(status_json, '"message":"', 1, true)
  if value_start == nil then
    return nil
  end
  local position = value_start + 1
  while position <= #status_json do
    local char = string.sub(status_json, position, position)
    if char == "\\" then
      position = position + 2
    elseif char == '"' then
      return string.sub(status_json, value_start + 1, position - 1)
    else
      position = position + 1
    end
  end
  return nil
end

-- Builds an OpenAI error body from a gRPC code and a message that is already
-- JSON-escaped.
local function openai_error(code, escaped_message)
  local kind = GRPC_ERRORS[code] or { "server_error", "internal_error" }
  if escaped_message == nil or escaped_message == "" then
    escaped_message = "The gateway ended the request with gRPC status " .. code .. "."
  end
  return '{"error":{"message":"' .. escaped_message .. '","type":"' .. kind[1]
    .. '","param":null,"code":"' .. kind[2] .. '"}}'
end

local function remove_grpc_fields(map)
  map:remove(ERROR_BODY_HEADER)
  map:remove("grpc-status")
  map:remove("grpc-message")
  map:remove("grpc-status-details-bin")
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local content_type = headers:get("content-type") or ""
  if string.find(content_type, "application/grpc", 1, true) == 1 then
    request_handle:streamInfo():dynamicMetadata():set(METADATA_NAMESPACE, GRPC_CLIENT_KEY, true)
  end

  local spoofed = {}
  for name, _ in pairs(headers) do
    if string.sub(name, 1, #CLIENT_HEADER_PREFIX) == CLIENT_HEADER_PREFIX then
      spoofed[#spoofed + 1] = name
    end
  end
  -- Removing while iterating would skip entries, so remove after the loop.
  for _, name in ipairs(spoofed) do
    headers:remove(name)
  end
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local content_type = headers:get("content-type") or ""
  if string.find(content_type, "application/grpc", 1, true) == 1 then
    return
  end
  local status = tonumber(headers:get(":status")) or 200
  if status < 400 then
    -- The transcoder leaves grpc-status and grpc-message on unary responses, and
    -- grpc-accept-encoding on every response.
    remove_grpc_fields(headers)
    headers:remove("grpc-accept-encoding")
    -- Streamed responses end with the router's trailers: the cost stays, the gRPC
    -- status goes. Iterating the chunks passes each one on as it arrives, unbuffered.
    for _ in response_handle:bodyChunks() do
    end
    local trailers = response_handle:trailers()
    if trailers ~= nil then
      remove_grpc_fields(trailers)
    end
    return
  end
  -- The router sets the body as trailing metadata. A trailers-only gRPC response
  -- carries it in the headers instead.
  local error_body = headers:get(ERROR_BODY_HEADER)

  -- Only error responses, which are short, are buffered. Successful responses and
  -- streams returned above and pass through as they arrive.
  local body = response_handle:body(true)
  local trailers = response_handle:trailers()
  if trailers ~= nil then
    error_body = error_body or trailers:get(ERROR_BODY_HEADER)
    remove_grpc_fields(trailers)
  end
  -- Header objects fetched before body() are invalid once the script has yielded.
  headers = response_handle:headers()

  if error_body == nil then
    local current = body:getBytes(0, body:length())
    local grpc_status = headers:get("grpc-status")
    if string.sub(current, 1, 8) == '{"code":' then
      -- The transcoder's google.rpc.Status JSON.
      local code = string.match(current, '"code":(%d+)') or "2"
      error_body = openai_error(code, status_message(current))
    elseif grpc_status ~= nil and grpc_status ~= "0" then
      -- The transcoder could not print the status, for example because
      -- grpc-status-details-bin contains a type missing from its descriptor set. It then leaves
      -- the gRPC headers and an empty body.
      local message = percent_decode(headers:get("grpc-message") or "")
      error_body = openai_error(grpc_status, json_escape(message))
    else
      -- Envoy's local replies (already in OpenAI's shape) and ext_authz denials.
      return
    end
  end

  body:setBytes(error_body)
  headers:replace("content-type", "application/json")
  headers:replace("content-length", tostring(#error_body))
  remove_grpc_fields(headers)
end
