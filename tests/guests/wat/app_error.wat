;; Returns err(app-error { message: "rejected" }) for every message.
(data (i32.const 512) "rejected")
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (call $reply_err (i32.const 512) (i32.const 8)))
