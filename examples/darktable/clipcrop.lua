--[[
clipcrop.lua: suggest aesthetic crops for the selected images from darktable 4.2 or later.

How darktable takes a crop from outside (measured with darktable-cli 4.2; README "Which hosts
apply the crop"): its Lightroom import reads the crs: crop from <basename>.xmp (IMG_1234.xmp;
never from IMG_1234.JPG.xmp, which is darktable's own sidecar, nor from XMP inside the file) the
first time it processes an image that has no darktable history of its own: opening it in the
darkroom, exporting it, or rendering its thumbnail. Once an image has history, it never reads
that file again.

So for every selected image this script
  1. has clipcrop write the crop as <basename>.xmp, and
  2. if the image has no edits of yours (image.is_altered is false; a crop darktable imported
     from an earlier run does not count): calls image:reset(), which drops only what darktable
     applied by itself and marks the image unprocessed, and image:drop_cache(), so the thumbnail
     is rendered again; that rendering (or opening it in the darkroom, or exporting it) applies
     the crop, as a crop in its history stack. Run it again after clipcrop changes its crop and
     the new one replaces the old;
  3. if you have edited the image: leaves your history alone and lists it, unless the
     preference "re-apply to edited images" is on, which resets those too (their darktable
     history is discarded, as history stack > discard does). Without it, discard the history
     yourself to take the new crop.
Measured with darktable 4.2.1's real Lua API (tests/xmp/test_host_darktable.py runs these calls in
darktable-cli --luacmd against a persistent library).
Nothing here needs image:apply_sidecar (darktable 5.2+), which applies darktable's own sidecar
format and not a Lightroom crop.

Two ways to reach clipcrop (set in Lua options, lighttable > preferences > lua options):
  * "command" (default): runs `clipcrop xmp write --naming base FILE` for each image
    (scores the photo if the database has no suggestion yet).
  * "http": talks to a running `clipcrop serve` (http://127.0.0.1:8765) with curl; useful
    when clipcrop lives in another environment. Only photos already in clipcrop's database
    can be served this way (run `clipcrop scan FOLDER` or `clipcrop watch FOLDER` first).

Install: copy to ~/.config/darktable/lua/ and add `require "clipcrop"` to ~/.config/darktable/luarc.
]]

local dt = require "darktable"

local MODULE = "clipcrop"
local sep = package.config:sub(1, 1)

dt.preferences.register(MODULE, "mode", "enum", "clipcrop: how to reach clipcrop",
  "command: run the clipcrop CLI; http: call a running `clipcrop serve`", "command", "command", "http")
dt.preferences.register(MODULE, "executable", "string", "clipcrop: command",
  "the clipcrop executable (full path if it is not on PATH)", "clipcrop")
dt.preferences.register(MODULE, "url", "string", "clipcrop: server URL",
  "base URL of `clipcrop serve`", "http://127.0.0.1:8765")
dt.preferences.register(MODULE, "reset_edited", "bool", "clipcrop: re-apply to edited images",
  "also reset images that have darktable history, so the new crop applies (discards that history)", false)
dt.preferences.register(MODULE, "aspect", "string", "clipcrop: aspect ratio",
  "crop shape to write, e.g. 3:2 or 1:1; empty for the best crop of any shape", "")

-- Quote one argument for the shell (POSIX single quotes; Windows double quotes).
local function quote(s)
  if sep == "\\" then
    return '"' .. s:gsub('"', '\\"') .. '"'
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  -- dt.control.execute runs the command without blocking the GUI thread's event loop.
  local rc = dt.control.execute(cmd)
  return rc == 0
end

local function capture(cmd)
  local fh = io.popen(cmd)
  if not fh then return nil end
  local out = fh:read("*a")
  fh:close()
  return out
end

local function write_with_cli(file)
  local exe = dt.preferences.read(MODULE, "executable", "string")
  local aspect = dt.preferences.read(MODULE, "aspect", "string")
  local cmd = quote(exe) .. " xmp write --naming base"
  if aspect ~= "" then cmd = cmd .. " --aspect " .. quote(aspect) end
  return run(cmd .. " " .. quote(file))
end

local function url_encode(s)
  return (s:gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function write_with_http(file)
  local base = dt.preferences.read(MODULE, "url", "string")
  local aspect = dt.preferences.read(MODULE, "aspect", "string")
  -- The server never takes a file path to open; it only finds photos already in its database.
  -- glob= with a literal path selects exactly that photo.
  local listing = capture("curl -sf " .. quote(base .. "/api/photos?limit=1&glob=" .. url_encode(file)))
  local id = listing and listing:match('"id"%s*:%s*(%d+)')
  if not id then
    dt.print_error("clipcrop: " .. file .. " is not in clipcrop's database")
    return false
  end
  local body = '{"naming":"base"' .. (aspect ~= "" and (',"aspect":"' .. aspect .. '"') or "") .. "}"
  -- X-Clipcrop marks the request as not coming from a web page (the server's CSRF check).
  return run("curl -sf -X POST -H 'Content-Type: application/json' -H 'X-Clipcrop: 1' -d "
    .. quote(body) .. " " .. quote(base .. "/api/photos/" .. id .. "/metadata") .. " > /dev/null")
end

-- Let darktable's first-processing Lightroom import apply the new crop (see the top of the file).
-- Returns "applied", or "edited" when the image has history of the user's that must not go.
local function reapply(image)
  local ok, altered = pcall(function() return image.is_altered end)
  if (not ok or altered ~= false) and not dt.preferences.read(MODULE, "reset_edited", "bool") then
    return "edited"  -- edited, or a darktable that cannot say: never risk someone's edits
  end
  image:reset()
  image:drop_cache()
  return "applied"
end

local function suggest_selected()
  local images = dt.gui.action_images
  if #images == 0 then
    dt.print("clipcrop: select some images first")
    return
  end
  local http = dt.preferences.read(MODULE, "mode", "enum") == "http"
  local job = dt.gui.create_job("clipcrop: suggesting crops", true)
  local done, failed, edited = 0, 0, {}
  for i, image in ipairs(images) do
    if job.valid == false then break end
    local file = image.path .. sep .. image.filename
    local ok
    if http then ok = write_with_http(file) else ok = write_with_cli(file) end
    if ok then
      if reapply(image) == "edited" then table.insert(edited, image.filename) end
      done = done + 1
    else
      failed = failed + 1
      dt.print_log("clipcrop: no crop written for " .. file)
    end
    job.percent = i / #images
  end
  job.valid = false
  local msg = string.format("clipcrop: %d crop(s) written, %d failed", done, failed)
  if #edited > 0 then
    msg = msg .. string.format("; %d already edited, crop not applied (discard their history to apply it): %s",
      #edited, table.concat(edited, ", "))
  end
  dt.print(msg)
end

dt.register_event(MODULE, "shortcut", function() suggest_selected() end, "clipcrop: suggest crops for selected images")

dt.register_lib(MODULE, "clipcrop", true, false,
  { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 700 } },
  dt.new_widget("box") {
    orientation = "vertical",
    dt.new_widget("button") {
      label = "suggest crops",
      tooltip = "write clipcrop's best crop as <basename>.xmp and apply it to the selected unedited images",
      clicked_callback = function() suggest_selected() end,
    },
  })
