;; Replies with a string that points outside its memory: lifting it traps.
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (call $reply_some (i32.const 65000) (i32.const 1000000)))
