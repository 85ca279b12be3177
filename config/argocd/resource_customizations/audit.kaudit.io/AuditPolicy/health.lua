-- Argo CD health check for the kaudit AuditPolicy singleton "cluster" (audit.kaudit.io/v1alpha1).
--
-- Healthy     every control-plane node runs the desired revision (Available=True), or no module
--             is accepted yet, so there is nothing to roll out and nodes keep their own policy.
-- Progressing a revision is being made (debounce after module changes) or rolled out node by
--             node, or the manager has not yet observed the current generation.
-- Degraded    a node failed or rolled back (the message names the node and the agent's reason),
--             a node's files drifted from the revision it applied (the message names each file
--             and what differs; the agent restores them), the singleton's settings or the merge
--             are invalid, the pinned revision does not exist, or no node carries the
--             control-plane label, so no apiserver runs the policy.
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

local function explain(c, fallback)
  local reason, message = text(c.reason), text(c.message)
  if reason == "" then reason = fallback end
  if message == "" then return reason end
  return reason .. ": " .. message
end

local function result(status, message)
  return {status = status, message = message}
end

local generation = nil
if type(obj.metadata) == "table" then generation = int(obj.metadata.generation) end

local status = obj.status
if type(status) ~= "table" then
  return result("Progressing", "Waiting for the kaudit manager to report on the audit policy.")
end

local observed = int(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  return result("Progressing", "Waiting for the kaudit manager to observe generation " .. text(generation) .. ".")
end

-- Failed, rolled-back and drifted nodes, as their agents report them. The manager says the
-- same in the Degraded condition; reading the entries too keeps the nodes visible if the manager
-- is down.
local function nodesIn(phases)
  local found = ""
  if type(status.nodes) ~= "table" then return found end
  for _, n in ipairs(status.nodes) do
    if type(n) == "table" and phases[n.phase] then
      if found ~= "" then found = found .. "; " end
      local name = text(n.name)
      if name == "" then name = "(unnamed)" end
      found = found .. "node " .. name .. " " .. n.phase
      if text(n.message) ~= "" then found = found .. ": " .. text(n.message) end
    end
  end
  return found
end
local failed = nodesIn({Failed = true, RolledBack = true})
local drifted = nodesIn({Drifted = true})

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  return result("Degraded", explain(degraded, "Degraded"))
end
if failed ~= "" then
  return result("Degraded", "NodeFailed: " .. failed .. ".")
end
if drifted ~= "" then
  return result("Degraded", "NodeDrifted: " .. drifted .. ".")
end

local updated = text(status.updatedNodes)
local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  local message = explain(progressing, "Progressing")
  if updated ~= "" then message = message .. " Updated nodes: " .. updated .. "." end
  return result("Progressing", message)
end

local available = condition(status, "Available")
if available == nil then
  return result("Progressing", "Waiting for the kaudit manager to report the Available condition.")
end
if available.status == "True" then
  return result("Healthy", explain(available, "Available"))
end
if available.reason == "NoModules" then
  return result("Healthy", "NoModules: no AuditPolicyModule is accepted yet, so there is nothing to roll out; nodes keep the audit policy they have.")
end
if available.reason == "NoControlPlaneNodes" then
  return result("Degraded", explain(available, "NoControlPlaneNodes"))
end
local message = explain(available, "NotAvailable")
if updated ~= "" then message = message .. " Updated nodes: " .. updated .. "." end
return result("Progressing", message)
