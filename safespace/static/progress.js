// Answer page: count answered questions as the member goes. The page works without this file.
"use strict";
document.querySelectorAll("form[data-progress]").forEach((form) => {
  const output = form.querySelector(".progress");
  const questions = [...new Set([...form.querySelectorAll("fieldset.likert input[type=radio]")].map((i) => i.name))];
  const template = output.dataset.template || "%(done)s of %(total)s answered";
  const update = () => {
    const done = questions.filter((name) => form.querySelector(`input[name="${CSS.escape(name)}"]:checked`)).length;
    output.textContent = template.replace("%(done)s", done).replace("%(total)s", questions.length);
  };
  output.hidden = false;
  form.addEventListener("change", update);
  update();
});
