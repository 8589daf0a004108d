// The rule editor: insert a template, pretty-print what was typed. No build step.
"use strict";
(function () {
    function editorOf(element) {
        const box = element.closest(".rule-json-editor");
        return { box: box, textarea: box.querySelector("textarea"), status: box.querySelector(".rule-json-status") };
    }

    function say(editor, text) {
        if (editor.status) {
            editor.status.textContent = text;
        }
    }

    document.addEventListener("click", function (event) {
        const insert = event.target.closest("[data-rule-template]");
        const format = event.target.closest("[data-rule-format]");
        if (!insert && !format) {
            return;
        }
        event.preventDefault();
        const editor = editorOf(insert || format);
        if (format) {
            try {
                editor.textarea.value = JSON.stringify(JSON.parse(editor.textarea.value), null, 2);
                say(editor, "Valid JSON.");
            } catch (error) {
                say(editor, "Not valid JSON: " + error.message);
            }
            return;
        }
        const templates = JSON.parse(document.getElementById(editor.box.dataset.templatesId).textContent);
        const template = templates[Number(insert.dataset.ruleTemplate)];
        const current = editor.textarea.value.trim();
        if (current && current !== "{}" && current !== "null" && !window.confirm("Replace the current rule with this template?")) {
            return;
        }
        editor.textarea.value = JSON.stringify(template.rule, null, 2);
        // A template is written for one campaign type (a quest has steps, not a trigger).
        const type = document.getElementById("id_type");
        if (template.campaignType && type && !type.disabled) {
            type.value = template.campaignType;
        }
        say(editor, "Inserted \u201c" + template.label + "\u201d: adjust the codes and amounts before saving.");
    });
})();
