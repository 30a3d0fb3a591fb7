"""Child process of test_dds_profile: publish or count 640x480 rgb8 images, best effort.

    python dds_image_probe.py pub N      # waits for a subscriber, sends N images at 5 Hz
    python dds_image_probe.py sub SECS   # prints how many images arrived
"""
import sys
import time

import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main():
    role, arg = sys.argv[1], sys.argv[2]
    rclpy.init()
    node = rclpy.create_node(f"dds_probe_{role}")
    if role == "pub":
        pub = node.create_publisher(Image, "/gs4_dds_probe", qos_profile_sensor_data)
        end = time.monotonic() + 60
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(1.0)
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=bytes(640 * 480 * 3))
        for _ in range(int(arg)):
            pub.publish(msg)
            time.sleep(0.2)
        time.sleep(1.0)
    else:
        got = []
        node.create_subscription(Image, "/gs4_dds_probe", lambda m: got.append(len(m.data)), qos_profile_sensor_data)
        end = time.monotonic() + float(arg)
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        print(f"received {len(got)} sizes {sorted(set(got))}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
