;; Echoes its payload, except that a payload starting with "x" traps
;; (`unreachable`): a guest that crashes on some inputs and serves the rest.
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (if (i32.and (i32.gt_u (local.get 5) (i32.const 0))
               (i32.eq (i32.load8_u (local.get 4)) (i32.const 0x78)))
    (then unreachable))
  (call $reply_some (local.get 4) (local.get 5)))
