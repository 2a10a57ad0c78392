// tally: a JavaScript actor. It counts words in its own storage, tells the
// Python counter actor about each one (send), asks it for its total
// (request; the answer arrives as a callback) and shows how a bug crashes.
//
// Commands (payloads are text):
//   count WORD   adds 1 to WORD's count; sends "add 1" to the counter actor
//   sync         requests the counter's total; the callback stores it
//   report       replies with every count and the last synced total, as JSON
//   bug          writes to storage, then hits a TypeError: a crash, rolled back
//   done         replies "bye" and stops normally (lifecycle.stop): a permanent
//                actor is restarted, a transient or temporary one removed
//   (anything else) an application error
import { get, set, keys } from "wasmactors:actor/storage@0.1.0";
import { send, request } from "wasmactors:actor/messaging@0.1.0";
import { stop } from "wasmactors:actor/lifecycle@0.1.0";
import { log } from "wasmactors:actor/services@0.1.0";

const COUNTER = "counter";

// Throw an AppError for a failure the caller should hear about: the call
// returns `err`, and what it wrote to storage or sent still counts.
class AppError extends Error {}

// componentize-js turns *every* exception into `err`, a bug's TypeError
// included. To make a bug crash instead (the call's storage writes and
// messages are dropped, the supervisor restarts the actor), print it and
// throw an error whose message is not a string: the component cannot encode
// it and traps. The printed line becomes the crash's reason.
function guarded(handler) {
  return (...args) => {
    try {
      return handler(...args);
    } catch (error) {
      if (error instanceof AppError) throw { message: error.message };
      console.error(describe(error));
      throw { message: Symbol("crash") };
    }
  };
}

// A refused host call (an import's `err`) throws an Error whose `payload`
// is the WIT error variant, e.g. {tag: "invalid-key", val: "keys are 1 to 1024 bytes"}.
function describe(error) {
  const payload = error?.payload;
  if (payload?.tag !== undefined) {
    return `${error.name}: ${payload.tag}${payload.val === undefined ? "" : `: ${payload.val}`}`;
  }
  return `${error?.name ?? "Error"}: ${error?.message ?? String(error)}`;
}

function handleMessage(msg) {
  const [command, ...rest] = msg.payload.split(" ");
  const arg = rest.join(" ");
  switch (command) {
    case "count": {
      if (!arg) throw new AppError("count needs a word");
      const n = Number(get(`count/${arg}`) ?? "0") + 1;
      set(`count/${arg}`, String(n));
      send(COUNTER, "add 1");
      return String(n);
    }
    case "sync": {
      const id = request(COUNTER, "get", 1000); // a bigint (u64)
      set(`pending/${id}`, "total");
      return undefined; // option<string>: none
    }
    case "report": {
      const counts = {};
      for (const key of keys("count/")) counts[key.slice(6)] = Number(get(key));
      return JSON.stringify({ counts, counter: get("counter-total") ?? null });
    }
    case "bug": {
      set("count/bug", "1"); // rolled back by the crash below
      const missing = undefined;
      return missing.length; // TypeError
    }
    case "done":
      stop(); // takes effect once this call returns: the reply still goes out
      return "bye";
    default:
      throw new AppError(`unknown command ${JSON.stringify(command)}; try count WORD, sync, report or done`);
  }
}

function handleCallback(id, outcome) {
  // outcome: {tag: "ok", val: payload} or {tag: "err", val: {tag: "timeout"} | {tag, val: string}}
  if (get(`pending/${id}`) === undefined) throw new AppError(`unexpected callback ${id}`);
  if (outcome.tag === "ok") {
    set("counter-total", outcome.val);
    log("info", `the counter's total is ${outcome.val}`);
  } else {
    log("warn", `sync failed: ${outcome.val.tag}`);
  }
}

export const handler = {
  handleMessage: guarded(handleMessage),
  handleCallback: guarded(handleCallback),
};
