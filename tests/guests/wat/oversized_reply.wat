;; Grows memory by 2 MiB and replies with all of it: a well-formed reply that
;; is larger than a 1 MiB payload limit.
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (drop (memory.grow (i32.const 32)))
  (call $reply_some (i32.const 0) (i32.const 2097152)))
