// bgit serve's page: pick a bake, see its plots, ask it and the prompted base model the same thing.
// Talks only to this server (/bgit/... and the OpenAI-compatible /v1/...).
"use strict";

const state = { commit: null, model: null, teacher: [], student: [] };
const $ = (id) => document.getElementById(id);

function showPrompt(messages) {
  if (!messages.length) return "(none)";
  return messages.map((m) => `[${m.role}] ${m.content}`).join("\n\n");
}

async function select(row) {
  document.querySelectorAll("tr.bake.selected").forEach((r) => r.classList.remove("selected"));
  row.classList.add("selected");
  state.commit = row.dataset.commit;
  state.model = row.dataset.model;
  $("detail").hidden = false;
  $("compare").hidden = false;
  $("detail-commit").textContent = state.commit.slice(0, 8);
  $("detail-model").textContent = `(model "${state.model}")`;
  $("right-model").textContent = state.model;
  $("loss-plot").src = `/bgit/bakes/${state.commit}/loss.png`;
  $("weights-plot").src = `/bgit/bakes/${state.commit}/weights.png`;
  const response = await fetch(`/bgit/bakes/${state.commit}/prompts`);
  const data = await response.json();
  const target = (data.targets || [])[0] || { teacher: [], student: [], target: "?" };
  state.teacher = target.teacher;
  state.student = target.student;
  $("teacher-summary").textContent = `teacher prompt of target ${target.target} (${target.teacher.length} messages)`;
  $("teacher-prompt").textContent = showPrompt(target.teacher);
  $("student-prompt").textContent = showPrompt(target.student);
  $("student-label").textContent = target.student.length ? "its student prompt" : "no prompt";
}

async function streamChat(model, messages, answer, meta) {
  answer.textContent = "";
  answer.classList.remove("error");
  answer.dataset.state = "running";
  meta.textContent = "…";
  const started = performance.now();
  let firstToken = null;
  const body = {
    model, messages, stream: true, stream_options: { include_usage: true },
    max_tokens: Number($("max-tokens").value) || 128, temperature: Number($("temperature").value) || 0,
  };
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: { message: response.statusText } }));
      throw new Error(error.error.message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let usage = null;
    let fingerprint = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const chunk = JSON.parse(event.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        fingerprint = chunk.system_fingerprint || fingerprint;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) {
            if (firstToken === null) firstToken = performance.now() - started;
            answer.textContent += choice.delta.content;
          }
        }
      }
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const ttft = firstToken === null ? "–" : `${Math.round(firstToken)} ms`;
    meta.textContent = usage
      ? `${usage.prompt_tokens} prompt tokens, ${usage.completion_tokens} completion tokens; ` +
        `first token ${ttft}, ${seconds} s; commit ${fingerprint.slice(0, 8)}`
      : `${seconds} s`;
    answer.dataset.state = "done";
  } catch (error) {
    answer.classList.add("error");
    answer.textContent = `Error: ${error.message}`;
    meta.textContent = "";
    answer.dataset.state = "error";
  }
}

function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || !state.model) return;
  const user = { role: "user", content: question };
  streamChat("base", [...state.teacher, user], $("left-answer"), $("left-meta"));
  streamChat(state.model, [...state.student, user], $("right-answer"), $("right-meta"));
}

document.querySelectorAll("tr.bake").forEach((row) => row.addEventListener("click", () => select(row)));
$("ask").addEventListener("submit", ask);
const first = document.querySelector("tr.bake");
if (first) select(first);
