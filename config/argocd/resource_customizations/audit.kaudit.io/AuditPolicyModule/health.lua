-- Argo CD health check for kaudit AuditPolicyModule (audit.kaudit.io/v1alpha1).
--
-- Healthy     the manager validated the current generation and accepted it (reason Valid), or
--             the module is disabled (reason Disabled, said in the message).
-- Progressing the manager has not yet validated the current generation (observedGeneration
--             behind metadata.generation, or no status at all).
-- Degraded    the current generation was rejected (Accepted=False: Invalid, or
--             GuardrailViolation); the message carries the reason and the manager's
--             explanation, which names the rule and field, or the guardrail and a request. The
--             last accepted version of the module stays in force meanwhile.
-- Rollout state (which nodes run which revision) belongs to the AuditPolicy "cluster".
--
-- Argo CD runs custom health checks without the string and math libraries, so this script uses
-- only base functions. It never raises an error on a malformed or partial status.

local function text(v)
  if type(v) == "string" then return v end
  if type(v) == "number" or type(v) == "boolean" then return tostring(v) end
  return ""
end

local function int(v)
  if type(v) == "number" then return v end
  if type(v) == "string" then return tonumber(v) end
  return nil
end

local function condition(status, condType)
  if type(status.conditions) ~= "table" then return nil end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == condType then return c end
  end
  return nil
end

local function result(status, message)
  return {status = status, message = message}
end

local generation = nil
if type(obj.metadata) == "table" then generation = int(obj.metadata.generation) end

local status = obj.status
if type(status) ~= "table" then
  if generation ~= nil then
    return result("Progressing", "Waiting for the kaudit manager to validate generation " .. text(generation) .. ".")
  end
  return result("Progressing", "Waiting for the kaudit manager to validate the module.")
end

local observed = int(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  return result("Progressing", "Waiting for the kaudit manager to validate generation " .. text(generation) ..
    (observed ~= nil and (" (it last validated generation " .. text(observed) .. ").") or "."))
end

local accepted = condition(status, "Accepted")
if accepted == nil then
  return result("Progressing", "Waiting for the kaudit manager to report the Accepted condition.")
end
local acceptedGeneration = int(accepted.observedGeneration)
if generation ~= nil and acceptedGeneration ~= nil and acceptedGeneration < generation then
  return result("Progressing", "Waiting for the kaudit manager to validate generation " .. text(generation) .. ".")
end

local reason = text(accepted.reason)
local message = text(accepted.message)
if accepted.status == "True" then
  if reason == "Disabled" then
    return result("Healthy", "Disabled: " .. (message ~= "" and message or "the module contributes no rules."))
  end
  local revision = int(status.includedInRevision)
  if revision ~= nil then
    message = message .. " Included in revision " .. text(revision) .. "."
  else
    message = message .. " Not in a revision yet: the manager makes one when module changes settle (debounce)."
  end
  return result("Healthy", message)
end
if accepted.status == "False" then
  if reason == "" then reason = "NotAccepted" end
  return result("Degraded", reason .. ": " .. (message ~= "" and message or "the kaudit manager rejected the module."))
end
return result("Progressing", "Accepted is " .. (text(accepted.status) ~= "" and text(accepted.status) or "not set") ..
  (message ~= "" and (": " .. message) or "."))
