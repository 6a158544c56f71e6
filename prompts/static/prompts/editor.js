// The prompt page's version editor (templates/admin/prompts/prompt/includes/editor.html): message and
// variable rows added and removed in place, the text/chat switch, the "other model" field, and the
// raw-JSON toggle, which carries what was typed from the fields to the JSON and back. No library.
"use strict";
(function () {
  const editor = document.getElementById("version-editor");
  if (!editor) return;
  document.documentElement.classList.add("js-editor");
  const OTHER = "__other__";
  const PARAMS = ["temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed"];
  const $ = (selector, root) => (root || editor).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || editor).querySelectorAll(selector));
  const field = (name) => editor.elements.namedItem(name);
  const checked = (name) => { const box = $(`input[name="${name}"]:checked`); return box ? box.value : ""; };

  function addRow(prefix) {
    const total = field(`${prefix}-TOTAL_FORMS`);
    const index = Number(total.value);
    const html = document.getElementById(`${prefix === "messages" ? "message" : "variable"}-empty`).innerHTML;
    const rows = document.getElementById(`${prefix === "messages" ? "message" : "variable"}-rows`);
    rows.insertAdjacentHTML("beforeend", html.replace(/__prefix__/g, String(index)));
    total.value = String(index + 1);
    return rows.lastElementChild;
  }
  function removeRow(row) {
    const box = $("input[name$='-DELETE']", row);
    if (box) box.checked = true;
    row.style.display = "none";
    row.classList.add("removed");
  }
  const liveRows = (kind) => $$(`.${kind}-row`).filter((row) => !row.classList.contains("removed") && !$("input[name$='-DELETE']", row).checked);
  const rowField = (row, name) => $(`[name$='-${name}']`, row);

  function sync() {
    editor.dataset.kind = checked("kind") || "text";
    editor.dataset.model = field("model").value === OTHER ? "other" : "listed";
    editor.dataset.mode = checked("mode") || "fields";
  }

  function fieldsToJson() {
    const version = { kind: checked("kind") };
    if (version.kind === "chat") {
      version.messages = liveRows("message").map((row) => ({ role: rowField(row, "role").value, content: rowField(row, "content").value }));
    } else {
      version.template = field("template").value;
    }
    version.variables = {};
    for (const row of liveRows("variable")) {
      const spec = { type: rowField(row, "type").value, required: rowField(row, "required").checked };
      const text = rowField(row, "default").value;
      if (text !== "") {
        try { spec.default = spec.type === "string" ? text : JSON.parse(text); } catch (error) { spec.default = text; }
      }
      if (rowField(row, "description").value) spec.description = rowField(row, "description").value;
      version.variables[rowField(row, "name").value] = spec;
    }
    version.model = field("model").value === OTHER ? field("model_other").value.trim() : field("model").value;
    version.params = {};
    for (const name of PARAMS) {
      const text = field(name).value.trim();
      if (text !== "") version.params[name] = Number(text);
    }
    const stops = field("stop").value.split("\n").filter((line) => line !== "");
    if (stops.length) version.params.stop = stops;
    return version;
  }

  function jsonToFields(version) {
    const kind = version.messages !== undefined ? "chat" : "text";
    $(`input[name="kind"][value="${kind}"]`).checked = true;
    field("template").value = typeof version.template === "string" ? version.template : "";
    liveRows("message").forEach(removeRow);
    for (const message of Array.isArray(version.messages) ? version.messages : []) {
      const row = addRow("messages");
      rowField(row, "role").value = message.role;
      rowField(row, "content").value = message.content;
    }
    liveRows("variable").forEach(removeRow);
    for (const [name, spec] of Object.entries(version.variables || {})) {
      const row = addRow("variables");
      rowField(row, "name").value = name;
      rowField(row, "type").value = spec.type || "string";
      rowField(row, "required").checked = spec.required !== undefined ? Boolean(spec.required) : !("default" in spec);
      rowField(row, "default").value = !("default" in spec) ? "" : (spec.type || "string") === "string" ? spec.default : JSON.stringify(spec.default);
      rowField(row, "description").value = spec.description || "";
    }
    const model = field("model");
    if (Array.from(model.options).some((option) => option.value === version.model)) {
      model.value = version.model;
    } else {
      model.value = OTHER;
      field("model_other").value = version.model || "";
    }
    const params = version.params || {};
    for (const name of PARAMS) field(name).value = params[name] !== undefined ? String(params[name]) : "";
    field("stop").value = Array.isArray(params.stop) ? params.stop.join("\n") : params.stop || "";
  }

  function showJsonProblem(message) {
    let note = $(".json-problem");
    if (!note) {
      note = document.createElement("p");
      note.className = "errornote json-problem";
      field("raw_json").insertAdjacentElement("beforebegin", note);
    }
    note.textContent = message;
    note.hidden = !message;
  }

  editor.addEventListener("click", (event) => {
    const add = event.target.closest(".add-row");
    if (add) {
      const row = addRow(add.dataset.prefix);
      const first = $("textarea, input[type=text]", row);
      if (first) first.focus();
      return;
    }
    const remove = event.target.closest(".remove-row");
    if (remove) removeRow(remove.closest(".editor-row"));
  });

  let mode = checked("mode") || "fields";
  editor.addEventListener("change", (event) => {
    const target = event.target;
    if (target.name === "kind" && target.value === "chat" && liveRows("message").length === 0) {
      // A text template becomes the first user message.
      const row = addRow("messages");
      rowField(row, "role").value = "user";
      rowField(row, "content").value = field("template").value;
    }
    if (target.name === "mode" && target.value !== mode) {
      if (target.value === "json") {
        field("raw_json").value = JSON.stringify(fieldsToJson(), null, 2);
        showJsonProblem("");
      } else {
        try {
          jsonToFields(JSON.parse(field("raw_json").value));
          showJsonProblem("");
        } catch (error) {
          // Stay on the JSON until it parses: nothing typed is thrown away.
          $('input[name="mode"][value="json"]').checked = true;
          showJsonProblem(`The JSON does not parse, so the fields cannot show it: ${error.message}`);
        }
      }
      mode = checked("mode");
    }
    sync();
  });
  sync();
})();
