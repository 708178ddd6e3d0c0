-- Argo CD health check for rollguard.io/ModelDeployment. Install it as the argocd-cm key
-- resource.customizations.health.rollguard.io_ModelDeployment (see charts/rollguard/README.md).
-- Argo CD runs it with gopher-lua (Lua 5.1), `obj` being the live object, and reads back
-- hs.status (Healthy, Progressing, Degraded, Suspended) and hs.message, as in argoproj/argo-cd
-- resource_customizations/flagger.app/Canary/health.lua and argoproj.io/Rollout/health.lua.
-- It reads only what rollguard writes for kstatus: observedGeneration, phase and the Ready,
-- Reconciling and Stalled conditions.
local hs = {}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for rollguard to report on this ModelDeployment"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for rollguard to observe generation " .. tostring(generation)
  return hs
end

local message = status.message or ""
local stalled = condition(status, "Stalled")
if is_true(stalled) then
  -- Rolled back, an invalid spec, or held past a deadline: a human has to act.
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or message)
  return hs
end

local reconciling = condition(status, "Reconciling")
if status.phase == "Paused" or (is_true(reconciling) and reconciling.reason == "AwaitingPromotion") then
  -- Held on purpose (spec.paused, the pause annotation, or a step without a duration), like a
  -- paused Argo Rollout: Suspended, not stuck.
  hs.status = "Suspended"
  hs.message = message
  return hs
end

if is_true(condition(status, "Ready")) and not is_true(reconciling) then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

hs.status = "Progressing"
hs.message = message
return hs
